//! Checkpoints: turning the in-memory tail of the store into a segment,
//! reclaiming the space of compacted records, and rebuilding a store from
//! its manifest and segments.
//!
//! A checkpoint is planned here, written by the caller, and installed here:
//!
//! 1. [`Mvcc::checkpoint_plan`] lists the records still in memory, plus
//!    the live records of segments worth reclaiming, and the manifest that
//!    describes the state at that moment (applied index, revisions, leases,
//!    alarms, segments).
//! 2. The caller writes the records into one new segment with
//!    [`FlushItem::encode`], makes it durable, then writes the manifest and
//!    makes that durable. Only then does the checkpoint exist: a crash
//!    before leaves the previous manifest in force, with the WAL still
//!    holding every entry after it.
//! 3. [`Mvcc::checkpoint_install`] points the records at their new home, so
//!    their values leave memory. Records changed meanwhile keep their
//!    newer location. The retired segments' files may then be deleted.
//!
//! Everything stays deterministic: what is planned depends only on the
//! state, and the state a restore gives equals the state the applied
//! commands gave (the model test checks this).

use std::sync::Arc;

use crate::mvcc::{Lease, Mvcc};
use crate::segment::{Corrupt, Manifest, Segment};
use crate::store::{Entry, FlushItem, KeyRange, Placed, Store};

/// A segment whose live bytes are below this share of its size is
/// rewritten (its live records copied into the next checkpoint's segment),
/// in percent.
pub const RECLAIM_LIVE_PERCENT: u64 = 50;
/// Segments smaller than this are merged into the next checkpoint's
/// segment once there are [`SMALL_SEGMENTS_MAX`] of them, in bytes.
pub const SMALL_SEGMENT_BYTES: u64 = 8 << 20;
/// How many small segments may accumulate before they are merged.
pub const SMALL_SEGMENTS_MAX: usize = 8;
/// Live bytes copied by one checkpoint at most, bounding its cost, in bytes.
pub const RECLAIM_BYTES_MAX: u64 = 64 << 20;

/// Bookkeeping kept next to the state, not part of it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Persist {
    /// Sequence number of the last manifest planned.
    seq: u64,
    /// The id the next segment takes.
    next_segment_id: u64,
    /// Records at or below this revision are in segments (or compacted).
    flushed_rev: i64,
    /// The plan being written, if any: (segment id, revision flushed to,
    /// segments it retires).
    in_flight: Option<(u64, i64, Vec<u64>)>,
}

/// What a checkpoint writes. See the module docs for the protocol.
#[derive(Debug)]
pub struct CheckpointPlan {
    /// The new segment's id; unused when `items` is empty.
    pub segment_id: u64,
    /// Records for the new segment: first those still in memory, in
    /// revision order, then those copied out of retired segments.
    pub items: Vec<FlushItem>,
    /// The manifest to write once the segment is durable.
    pub manifest: Manifest,
    /// Segments the manifest no longer lists; delete their files once the
    /// manifest is durable.
    pub retired: Vec<u64>,
}

impl CheckpointPlan {
    /// Bytes the new segment's records take.
    pub fn record_bytes(&self) -> u64 {
        self.items.iter().map(FlushItem::record_bytes).sum()
    }
}

/// Sizes for Maintenance.Status and the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Bytes of the live segment files.
    pub file_bytes: u64,
    /// Bytes of those files still referenced.
    pub live_file_bytes: u64,
    /// Bytes of records not yet written to a segment.
    pub mem_bytes: u64,
    pub mem_records: usize,
    pub segments: usize,
}

impl Mvcc {
    /// The live segments, ascending by id: with the newest manifest they are
    /// the whole checkpointed state (what a Raft leader ships to a follower
    /// that fell behind its log). The bytes stay readable while the `Arc`s
    /// live, even after a later checkpoint unlinks the files.
    pub fn live_segments(&self) -> Vec<Arc<Segment>> {
        let mut out: Vec<Arc<Segment>> = self
            .store
            .segment_stats()
            .map(|s| Arc::clone(&s.seg))
            .collect();
        out.sort_by_key(|s| s.id());
        out
    }

    /// Sizes of the persistent store.
    pub fn store_stats(&self) -> StoreStats {
        let (mem_bytes, mem_records) = self.store.mem_usage();
        let mut st = StoreStats {
            mem_bytes,
            mem_records,
            ..StoreStats::default()
        };
        for s in self.store.segment_stats() {
            st.file_bytes += s.seg.len();
            st.live_file_bytes += s.live_bytes + s.retained_bytes;
            st.segments += 1;
        }
        st
    }

    /// Bytes and count of the records held only in memory; O(1).
    pub fn mem_usage(&self) -> (u64, usize) {
        self.store.mem_usage()
    }

    /// Whether the segments hold dead bytes worth reclaiming now. Walks
    /// every segment: call it when something changed, not per request.
    pub fn reclaim_due(&self) -> bool {
        !self.reclaim_choice(false).is_empty()
    }

    /// The segments to rewrite: sparse ones, and small ones once there are
    /// many; with `all`, every segment holding any dead bytes. Bounded by
    /// [`RECLAIM_BYTES_MAX`] live bytes.
    fn reclaim_choice(&self, all: bool) -> Vec<u64> {
        let stats: Vec<_> = self.store.segment_stats().collect();
        let small = stats
            .iter()
            .filter(|s| s.seg.len() < SMALL_SEGMENT_BYTES)
            .count();
        let mut out = Vec::new();
        let mut copied = 0u64;
        for s in stats {
            let size = s.seg.len();
            // Live bytes count records only, so compare with the records'
            // share of the file: a full segment of tiny records is not
            // sparse because of its index.
            let records = s.seg.record_bytes();
            let used = s.live_bytes + s.retained_bytes;
            let sparse = used * 100 < records * RECLAIM_LIVE_PERCENT;
            let dead_any = used < records && all;
            let merge = small >= SMALL_SEGMENTS_MAX && size < SMALL_SEGMENT_BYTES;
            if !(sparse || dead_any || merge) {
                continue;
            }
            if copied + s.live_bytes > RECLAIM_BYTES_MAX && !out.is_empty() {
                break;
            }
            copied += s.live_bytes;
            out.push(s.seg.id());
        }
        out
    }

    /// Plans a checkpoint covering every command applied so far, which
    /// must be log entry `applied_index` of `applied_term`. With
    /// `reclaim_all`, every segment holding dead bytes is rewritten
    /// (Maintenance.Defragment); otherwise only those the policy picks.
    /// One checkpoint at a time: the plan must be installed or abandoned
    /// before the next.
    pub fn checkpoint_plan(
        &mut self,
        applied_index: u64,
        applied_term: u64,
        reclaim_all: bool,
    ) -> Result<CheckpointPlan, Corrupt> {
        assert!(self.persist.in_flight.is_none(), "one checkpoint at a time");
        let retired = self.reclaim_choice(reclaim_all);
        let mut items = self.store.mem_items(self.persist.flushed_rev);
        for id in &retired {
            items.extend(self.store.live_items_of(*id)?);
        }
        let segment_id = self.persist.next_segment_id.max(1);
        let mut segments: Vec<u64> = self
            .store
            .segment_stats()
            .map(|s| s.seg.id())
            .filter(|id| !retired.contains(id))
            .collect();
        if !items.is_empty() {
            segments.push(segment_id);
            self.persist.next_segment_id = segment_id + 1;
        }
        self.persist.seq += 1;
        self.persist.in_flight = Some((segment_id, self.current_rev, retired.clone()));
        let manifest = Manifest {
            seq: self.persist.seq,
            applied_index,
            applied_term,
            current_rev: self.current_rev,
            compact_rev: self.compact_rev,
            next_segment_id: self.persist.next_segment_id.max(1),
            segments,
            leases: self
                .leases
                .iter()
                .map(|(id, l)| (*id, l.ttl_secs))
                .collect(),
            alarms: self.alarms.clone(),
            compaction_hashes: self.compaction_hashes.clone(),
            membership: Vec::new(),
        };
        Ok(CheckpointPlan {
            segment_id,
            items,
            manifest,
            retired,
        })
    }

    /// Installs a written checkpoint: `segment` is the new segment (absent
    /// when the plan had no records) and `placed` each item with its
    /// (offset, length) there.
    pub fn checkpoint_install(&mut self, segment: Option<Arc<Segment>>, placed: &[Placed]) {
        let (id, flushed_to, retired) = self
            .persist
            .in_flight
            .take()
            .expect("a checkpoint was planned");
        if let Some(seg) = segment {
            assert_eq!(seg.id(), id, "the planned segment is installed");
            self.store.install(seg, placed);
        }
        self.store.retire(&retired);
        self.persist.flushed_rev = flushed_to;
    }

    /// Forgets a planned checkpoint that could not be written; its records
    /// stay where they were and the next plan includes them again.
    pub fn checkpoint_abandon(&mut self) {
        self.persist.in_flight = None;
    }

    /// Rebuilds the state a manifest describes from its segments (in any
    /// order). Reads the segments' index blocks only.
    pub fn restore(manifest: &Manifest, segments: Vec<Arc<Segment>>) -> Result<Mvcc, Corrupt> {
        let store = Store::load(segments, manifest.compact_rev)?;
        let mut m = Mvcc::new();
        m.current_rev = manifest.current_rev.max(1);
        m.compact_rev = manifest.compact_rev;
        m.alarms = manifest.alarms.clone();
        m.compaction_hashes = manifest.compaction_hashes.clone();
        for (id, ttl) in &manifest.leases {
            m.leases.insert(
                *id,
                Lease {
                    ttl_secs: *ttl,
                    ..Lease::default()
                },
            );
        }
        let mut live = 0;
        for (k, r) in store.range_at(KeyRange::From(&[]), m.current_rev) {
            live += 1;
            if let Entry::Put { lease, .. } = r.entry {
                if let Some(l) = m.leases.get_mut(&lease) {
                    l.keys.insert(k.to_vec());
                }
            }
        }
        m.live_keys = live;
        m.store = store;
        m.events_from = m.current_rev + 1;
        m.persist = Persist {
            seq: manifest.seq,
            next_segment_id: manifest.next_segment_id,
            flushed_rev: m.current_rev,
            in_flight: None,
        };
        Ok(m)
    }

    /// The first damage a read of stored bytes met, if any, for the log.
    /// Reads that met it answered [`crate::Error::Corrupt`].
    pub fn take_corruption(&self) -> Option<Corrupt> {
        self.store.take_corruption()
    }
}
