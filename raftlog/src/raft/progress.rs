//! A leader's per-peer replication state and flow control.
//!
//! * `Probe`: the match point is unknown. One append at a time; the next
//!   waits for its answer (or a heartbeat answer).
//! * `Replicate`: the peer is known to match at `match_index`. Appends are
//!   sent back to back, `next_index` moving ahead optimistically, at most
//!   `inflight_msgs_max` unacknowledged.
//! * `Snapshot`: the peer needs entries the leader no longer holds; a
//!   snapshot was sent and nothing else is until it is reported installed
//!   (or failed).

use std::collections::VecDeque;

use super::types::{PeerProgress, ProgressState};

#[derive(Clone, Debug)]
pub(crate) struct Progress {
    pub(crate) match_index: u64,
    pub(crate) next_index: u64,
    pub(crate) state: ProgressState,
    /// In `Probe`: an append is out and unanswered.
    pub(crate) probe_sent: bool,
    /// In `Snapshot`: the index of the snapshot sent.
    pub(crate) pending_snapshot: u64,
    pub(crate) recent_active: bool,
    /// Last index of each unacknowledged append, oldest first.
    inflights: VecDeque<u64>,
    inflights_max: usize,
}

impl Progress {
    pub(crate) fn new(next_index: u64, inflights_max: usize) -> Progress {
        Progress {
            match_index: 0,
            next_index,
            state: ProgressState::Probe,
            probe_sent: false,
            pending_snapshot: 0,
            recent_active: false,
            inflights: VecDeque::new(),
            inflights_max,
        }
    }

    fn reset_state(&mut self, state: ProgressState) {
        self.probe_sent = false;
        self.pending_snapshot = 0;
        self.state = state;
        self.inflights.clear();
    }

    pub(crate) fn become_probe(&mut self) {
        // After a snapshot, resume after it: the peer holds it (or will
        // tell us otherwise).
        if self.state == ProgressState::Snapshot {
            let pending = self.pending_snapshot;
            self.reset_state(ProgressState::Probe);
            self.next_index = (self.match_index + 1).max(pending + 1);
        } else {
            self.reset_state(ProgressState::Probe);
            self.next_index = self.match_index + 1;
        }
    }

    pub(crate) fn become_replicate(&mut self) {
        self.reset_state(ProgressState::Replicate);
        self.next_index = self.match_index + 1;
    }

    pub(crate) fn become_snapshot(&mut self, snapshot_index: u64) {
        self.reset_state(ProgressState::Snapshot);
        self.pending_snapshot = snapshot_index;
    }

    /// An accepting answer up to `n`. Returns whether `match_index` moved.
    pub(crate) fn maybe_update(&mut self, n: u64) -> bool {
        let updated = self.match_index < n;
        if updated {
            self.match_index = n;
            self.probe_sent = false;
        }
        self.next_index = self.next_index.max(n + 1);
        updated
    }

    /// A rejecting answer for `rejected` (the `prev_index` the peer did not
    /// match), with the leader's guess `match_hint` of where the logs agree.
    /// Returns false when the answer is stale.
    pub(crate) fn maybe_decr_to(&mut self, rejected: u64, match_hint: u64) -> bool {
        // Everything up to match is known good; an answer about an index at
        // or below it is stale.
        if rejected <= self.match_index {
            return false;
        }
        if self.state == ProgressState::Replicate {
            self.next_index = self.match_index + 1;
            return true;
        }
        // Probe/Snapshot: only the answer to the last probe counts.
        if self.next_index == 0 || self.next_index - 1 != rejected {
            return false;
        }
        self.next_index = rejected.min(match_hint + 1).max(self.match_index + 1);
        self.probe_sent = false;
        true
    }

    pub(crate) fn is_paused(&self) -> bool {
        match self.state {
            ProgressState::Probe => self.probe_sent,
            ProgressState::Replicate => self.inflights.len() >= self.inflights_max,
            ProgressState::Snapshot => true,
        }
    }

    /// An append ending at `last` (with `entries` entries) was sent.
    pub(crate) fn sent_append(&mut self, entries: usize, last: u64) {
        match self.state {
            ProgressState::Replicate => {
                if entries > 0 {
                    debug_assert!(self.inflights.back().is_none_or(|b| *b < last));
                    self.next_index = last + 1;
                    self.inflights.push_back(last);
                }
            }
            ProgressState::Probe => self.probe_sent = true,
            ProgressState::Snapshot => unreachable!("no appends in snapshot state"),
        }
    }

    /// Frees the inflight slots of appends up to `index`.
    pub(crate) fn free_inflights_to(&mut self, index: u64) {
        while self.inflights.front().is_some_and(|f| *f <= index) {
            self.inflights.pop_front();
        }
    }

    /// Frees the oldest slot (a heartbeat answer shows the peer is alive
    /// even if an append answer was lost).
    pub(crate) fn free_first_inflight(&mut self) {
        self.inflights.pop_front();
    }

    /// The public view; whether the peer is a learner is the
    /// configuration's business.
    pub(crate) fn view(&self, is_learner: bool) -> PeerProgress {
        PeerProgress {
            match_index: self.match_index,
            next_index: self.next_index,
            state: self.state,
            is_learner,
            recent_active: self.recent_active,
            inflight_msgs: self.inflights.len(),
            pending_snapshot: self.pending_snapshot,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicate_pipelines_up_to_the_limit() {
        let mut p = Progress::new(1, 2);
        p.maybe_update(0);
        p.become_replicate();
        p.sent_append(3, 3);
        assert!(!p.is_paused());
        p.sent_append(2, 5);
        assert!(p.is_paused());
        assert_eq!(p.next_index, 6);
        assert!(p.maybe_update(3));
        p.free_inflights_to(3);
        assert!(!p.is_paused());
    }

    #[test]
    fn probe_decrements_with_hint_and_ignores_stale() {
        let mut p = Progress::new(11, 8);
        p.sent_append(0, 10);
        assert!(p.is_paused());
        // Stale: not the probe we sent.
        assert!(!p.maybe_decr_to(7, 3));
        assert!(p.maybe_decr_to(10, 4));
        assert_eq!(p.next_index, 5);
        assert!(!p.is_paused());
    }

    #[test]
    fn snapshot_resumes_after_it() {
        let mut p = Progress::new(3, 8);
        p.become_snapshot(20);
        assert!(p.is_paused());
        p.become_probe();
        assert_eq!(p.next_index, 21);
    }
}
