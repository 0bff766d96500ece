//! The in-memory Raft log of one member.
//!
//! It holds every entry from `first_index()` to `last_index()`, preceded by
//! a known `(offset, offset_term)`: the snapshot or compaction point. It
//! tracks how far entries are persisted (`stabled`), committed and applied:
//!
//! ```text
//! offset < first_index ..= applied <= committed <= last_index
//!                           stabled <= last_index
//! ```
//!
//! The application's durable log mirrors it through `Ready::entries`.

use std::collections::VecDeque;

use super::error::RaftError;
use super::types::{Entry, EntryKind, SnapshotMeta};

#[derive(Clone, Debug)]
pub(crate) struct RaftLog {
    /// Index of the entry just before `entries[0]`.
    offset: u64,
    /// Term of the entry at `offset` (0 for index 0).
    offset_term: u64,
    /// Entries `offset + 1 ..= last_index()`.
    entries: VecDeque<Entry>,
    pub(crate) committed: u64,
    pub(crate) applied: u64,
    /// Entries up to here are durable (the application said so through
    /// `advance`).
    pub(crate) stabled: u64,
    /// The latest state snapshot the application holds, sent to followers
    /// that need entries below `first_index()`.
    pub(crate) snapshot: Option<SnapshotMeta>,
    /// A snapshot received from the leader and not yet installed.
    pub(crate) pending_snapshot: Option<SnapshotMeta>,
}

impl RaftLog {
    /// A log whose entries start after `(offset, offset_term)`.
    pub(crate) fn new(offset: u64, offset_term: u64) -> RaftLog {
        RaftLog {
            offset,
            offset_term,
            entries: VecDeque::new(),
            committed: offset,
            applied: offset,
            stabled: offset,
            snapshot: None,
            pending_snapshot: None,
        }
    }

    pub(crate) fn first_index(&self) -> u64 {
        self.offset + 1
    }

    pub(crate) fn last_index(&self) -> u64 {
        self.offset + self.entries.len() as u64
    }

    pub(crate) fn last_term(&self) -> u64 {
        self.entries.back().map_or(self.offset_term, |e| e.term)
    }

    /// Term of entry `i`, if the log knows it (the offset counts).
    pub(crate) fn term(&self, i: u64) -> Option<u64> {
        if i == self.offset {
            return Some(self.offset_term);
        }
        if i < self.offset || i > self.last_index() {
            return None;
        }
        Some(self.entries[(i - self.offset - 1) as usize].term)
    }

    pub(crate) fn match_term(&self, i: u64, term: u64) -> bool {
        self.term(i) == Some(term)
    }

    pub(crate) fn entry(&self, i: u64) -> Option<&Entry> {
        if i <= self.offset || i > self.last_index() {
            return None;
        }
        Some(&self.entries[(i - self.offset - 1) as usize])
    }

    /// §5.4.1: whether a log ending at `(index, term)` is at least as
    /// up to date as this one.
    pub(crate) fn is_up_to_date(&self, index: u64, term: u64) -> bool {
        term > self.last_term() || (term == self.last_term() && index >= self.last_index())
    }

    /// Entries `lo ..= hi` (clamped to what is held), at most `bytes_max`
    /// bytes but at least one entry. `None` if `lo` is compacted away.
    pub(crate) fn slice(&self, lo: u64, hi: u64, bytes_max: u64) -> Option<Vec<Entry>> {
        if lo <= self.offset {
            return None;
        }
        let hi = hi.min(self.last_index());
        let mut out = Vec::new();
        let mut bytes = 0u64;
        let mut i = lo;
        while i <= hi {
            let e = &self.entries[(i - self.offset - 1) as usize];
            bytes += e.size_bytes();
            if !out.is_empty() && bytes > bytes_max {
                break;
            }
            out.push(e.clone());
            i += 1;
        }
        Some(out)
    }

    /// Appends entries that continue the log or overwrite an uncommitted
    /// suffix. Returns the new last index.
    pub(crate) fn append(&mut self, ents: Vec<Entry>) -> u64 {
        let Some(first) = ents.first() else {
            return self.last_index();
        };
        assert!(
            first.index > self.committed,
            "append at {} would overwrite committed entries (commit {})",
            first.index,
            self.committed
        );
        assert!(
            first.index > self.offset && first.index <= self.last_index() + 1,
            "append at {} leaves a gap (log {}..={})",
            first.index,
            self.first_index(),
            self.last_index()
        );
        let keep = (first.index - self.offset - 1) as usize;
        self.entries.truncate(keep);
        self.stabled = self.stabled.min(first.index - 1);
        for e in ents {
            debug_assert_eq!(e.index, self.last_index() + 1, "entries contiguous");
            debug_assert!(e.term >= self.last_term(), "terms never decrease");
            self.entries.push_back(e);
        }
        self.last_index()
    }

    /// The first entry of `ents` that is not already in the log (missing or
    /// with another term), if any.
    fn find_conflict(&self, ents: &[Entry]) -> Option<usize> {
        ents.iter().position(|e| !self.match_term(e.index, e.term))
    }

    /// A follower's handling of an append: if the log holds
    /// `(prev_index, prev_term)`, adds the new part of `ents` (truncating a
    /// conflicting suffix) and advances the commit index to
    /// `min(commit, last new index)`. Returns the last index known to match
    /// the leader, or `None` on a mismatch at `prev_index`.
    pub(crate) fn maybe_append(
        &mut self,
        prev_index: u64,
        prev_term: u64,
        commit: u64,
        mut ents: Vec<Entry>,
    ) -> Result<Option<u64>, RaftError> {
        if !self.match_term(prev_index, prev_term) {
            return Ok(None);
        }
        let last_new = prev_index + ents.len() as u64;
        if let Some(pos) = self.find_conflict(&ents) {
            let at = ents[pos].index;
            if at <= self.committed {
                return Err(RaftError::CommittedEntryConflict {
                    index: at,
                    commit: self.committed,
                });
            }
            ents.drain(..pos);
            self.append(ents);
        }
        self.commit_to(commit.min(last_new));
        Ok(Some(last_new))
    }

    /// The largest index `<= index` whose term is `<= term`, with its term
    /// (the offset if none is held). Used to skip a whole conflicting term
    /// per round trip when repairing a follower's log.
    pub(crate) fn find_conflict_by_term(&self, index: u64, term: u64) -> (u64, u64) {
        let mut i = index.min(self.last_index());
        while i > self.offset {
            let t = self.term(i).expect("index within the log");
            if t <= term {
                return (i, t);
            }
            i -= 1;
        }
        (self.offset, self.offset_term)
    }

    /// Raises the commit index (never lowers it).
    pub(crate) fn commit_to(&mut self, to: u64) {
        if to > self.committed {
            assert!(
                to <= self.last_index(),
                "commit {} beyond last index {}",
                to,
                self.last_index()
            );
            self.committed = to;
        }
    }

    /// Records that entries up to `(index, term)` are durable, unless the
    /// log changed there since they were handed out.
    pub(crate) fn stable_to(&mut self, index: u64, term: u64) {
        if index > self.stabled && self.match_term(index, term) {
            self.stabled = index;
        }
    }

    /// Records that the application applied up to `index`.
    pub(crate) fn applied_to(&mut self, index: u64) {
        if index > self.applied {
            assert!(
                index <= self.committed,
                "applied {} beyond commit {}",
                index,
                self.committed
            );
            self.applied = index;
        }
    }

    /// Entries the application has not yet made durable.
    pub(crate) fn unstable(&self) -> impl Iterator<Item = &Entry> {
        let skip = (self.stabled.max(self.offset) - self.offset) as usize;
        self.entries.iter().skip(skip)
    }

    pub(crate) fn has_unstable(&self) -> bool {
        self.stabled < self.last_index()
    }

    /// Entries `from ..= committed` to hand to the application, at most
    /// `bytes_max` bytes (at least one).
    pub(crate) fn committed_from(&self, from: u64, bytes_max: u64) -> Vec<Entry> {
        if from > self.committed {
            return Vec::new();
        }
        self.slice(from, self.committed, bytes_max)
            .expect("entries after applied are never compacted")
    }

    /// Replaces the log with a snapshot received from the leader.
    pub(crate) fn restore(&mut self, meta: SnapshotMeta) {
        assert!(meta.index > self.committed, "restore behind commit");
        self.entries.clear();
        self.offset = meta.index;
        self.offset_term = meta.term;
        self.committed = meta.index;
        self.stabled = meta.index;
        // `applied` moves once the application installed the snapshot.
        self.pending_snapshot = Some(meta);
    }

    /// The application installed the snapshot at `index`.
    pub(crate) fn snapshot_installed(&mut self, index: u64) {
        if let Some(p) = &self.pending_snapshot {
            if p.index == index {
                let meta = self.pending_snapshot.take().expect("checked");
                self.applied = self.applied.max(index);
                if self.snapshot.as_ref().is_none_or(|s| s.index < index) {
                    self.snapshot = Some(meta);
                }
            }
        }
    }

    /// Drops entries up to and including `to` (which must be applied and
    /// durable), keeping their successors.
    pub(crate) fn compact(&mut self, to: u64) {
        if to <= self.offset {
            return;
        }
        assert!(
            to <= self.applied,
            "compact {} beyond applied {}",
            to,
            self.applied
        );
        assert!(
            to <= self.stabled,
            "compact {} beyond stable {}",
            to,
            self.stabled
        );
        let term = self.term(to).expect("compaction point in the log");
        let n = (to - self.offset) as usize;
        self.entries.drain(..n);
        self.offset = to;
        self.offset_term = term;
    }

    /// Whether a held entry in `(lo, hi]` is a conf change.
    pub(crate) fn has_conf_change_in(&self, lo: u64, hi: u64) -> bool {
        let lo = lo.max(self.offset);
        let hi = hi.min(self.last_index());
        (lo + 1..=hi).any(|i| {
            self.entry(i)
                .is_some_and(|e| e.kind == EntryKind::ConfChange)
        })
    }

    /// Debug check of the ordering invariants.
    pub(crate) fn check_invariants(&self) {
        // Only a received snapshot, not yet installed, runs ahead of applied.
        debug_assert!(
            self.pending_snapshot.is_some() || self.offset <= self.applied,
            "offset {} > applied {}",
            self.offset,
            self.applied
        );
        debug_assert!(self.applied <= self.committed);
        debug_assert!(self.committed <= self.last_index());
        debug_assert!(self.stabled <= self.last_index());
        debug_assert!(self.stabled >= self.offset);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ent(index: u64, term: u64) -> Entry {
        Entry {
            term,
            index,
            kind: EntryKind::Normal,
            data: vec![],
        }
    }

    fn log_with(terms: &[u64]) -> RaftLog {
        let mut l = RaftLog::new(0, 0);
        let ents: Vec<Entry> = terms
            .iter()
            .enumerate()
            .map(|(i, t)| ent(i as u64 + 1, *t))
            .collect();
        l.append(ents);
        l
    }

    #[test]
    fn maybe_append_truncates_conflicts_and_commits() {
        let mut l = log_with(&[1, 1, 2, 2]);
        // Mismatch at prev.
        assert_eq!(l.maybe_append(4, 3, 4, vec![]).unwrap(), None);
        // Conflict at 3: replaced by term 3 entries.
        assert_eq!(
            l.maybe_append(2, 1, 3, vec![ent(3, 3), ent(4, 3), ent(5, 3)])
                .unwrap(),
            Some(5)
        );
        assert_eq!(l.term(3), Some(3));
        assert_eq!(l.last_index(), 5);
        assert_eq!(l.committed, 3);
        // A stale, shorter append does not truncate matching entries.
        assert_eq!(l.maybe_append(2, 1, 3, vec![ent(3, 3)]).unwrap(), Some(3));
        assert_eq!(l.last_index(), 5);
        // Overwriting a committed entry is refused.
        assert!(matches!(
            l.maybe_append(2, 1, 3, vec![ent(3, 4)]),
            Err(RaftError::CommittedEntryConflict { index: 3, .. })
        ));
    }

    #[test]
    fn find_conflict_by_term_skips_terms() {
        let l = log_with(&[1, 1, 2, 2, 2, 5, 5]);
        assert_eq!(l.find_conflict_by_term(7, 4), (5, 2));
        assert_eq!(l.find_conflict_by_term(7, 5), (7, 5));
        assert_eq!(l.find_conflict_by_term(4, 1), (2, 1));
        assert_eq!(l.find_conflict_by_term(9, 0), (0, 0));
    }

    #[test]
    fn compact_keeps_offset_term() {
        let mut l = log_with(&[1, 1, 2, 2, 3]);
        l.commit_to(4);
        l.applied_to(4);
        l.stable_to(5, 3);
        l.compact(3);
        assert_eq!(l.first_index(), 4);
        assert_eq!(l.term(3), Some(2));
        assert_eq!(l.term(2), None);
        assert_eq!(l.slice(3, 5, u64::MAX), None);
        assert_eq!(l.slice(4, 5, u64::MAX).unwrap().len(), 2);
        // The byte limit still yields one entry.
        assert_eq!(l.slice(4, 5, 1).unwrap().len(), 1);
    }
}
