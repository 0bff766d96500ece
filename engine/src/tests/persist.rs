//! Model-based test of the revision store's persistence: the same oracle
//! and random commands as `model.rs`, against an engine that checkpoints
//! into segments on a simulated disk, crashes at every step of the
//! checkpoint protocol, and reopens from its manifest plus the log tail.
//!
//! The disk keeps only what was made durable. Crash points: before the
//! segment is durable, between segment and manifest, a torn manifest, and
//! after the manifest but before retired segments are deleted. Each reopen
//! also compares the restored state with a twin that never persisted.
//!
//! `ENGINE_PERSIST_SEEDS=<n>` runs more seeds (the long fuzz run);
//! `ENGINE_PERSIST_SEED=<n>` reruns one.

use std::collections::BTreeMap;
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::model::{run_model, Sut};
use super::*;
use crate::segment::{parse_segment_name, segment_name, Manifest, Segment, SegmentEncoder};

/// Seeds the regular run covers, in seeds.
const PERSIST_SEEDS_COUNT: u64 = 60;
/// Random steps per seed, in steps.
const PERSIST_STEPS_PER_SEED: usize = 600;

/// A deliberately broken persistence rule, to show the test catches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bug {
    None,
    /// Replays the log from the checkpoint's own entry: applied twice.
    ReplayCheckpointedEntry,
    /// Writes the manifest before the segment is durable.
    ManifestBeforeSegment,
    /// Deletes retired segments before the manifest that drops them.
    DeleteBeforeManifest,
}

struct Persisted {
    mvcc: Mvcc,
    /// A twin that only applies commands, never persists.
    twin: Mvcc,
    /// Durable files by name.
    disk: BTreeMap<String, Vec<u8>>,
    /// Every command applied: the log a restart replays.
    log: Vec<Command>,
    /// Events taken from an instance before it was reopened.
    carried_events: Vec<Event>,
    rng: StdRng,
    bug: Bug,
    checkpoints: usize,
    reopens: usize,
    crashes: usize,
    reclaimed_segments: usize,
}

impl Persisted {
    fn new(seed: u64, bug: Bug) -> Persisted {
        Persisted {
            mvcc: Mvcc::new(),
            twin: Mvcc::new(),
            disk: BTreeMap::new(),
            log: Vec::new(),
            carried_events: Vec::new(),
            rng: StdRng::seed_from_u64(seed ^ 0x5eed),
            bug,
            checkpoints: 0,
            reopens: 0,
            crashes: 0,
            reclaimed_segments: 0,
        }
    }

    fn write_manifest(&mut self, m: &Manifest, torn: bool) {
        let slot = crate::segment::MANIFEST_SLOTS[(m.seq % 2) as usize];
        let mut bytes = m.encode();
        if torn {
            let keep = self.rng.random_range(0..bytes.len());
            bytes.truncate(keep);
        }
        self.disk.insert(slot.to_string(), bytes);
    }

    /// One checkpoint, possibly cut short by a crash (then a reopen).
    fn checkpoint(&mut self) -> Result<(), String> {
        let applied = self.log.len() as u64;
        let plan = self
            .mvcc
            .checkpoint_plan(applied, 1, self.rng.random_range(0..8) == 0)
            .map_err(|e| e.to_string())?;
        let (file, placed) = encode_plan(&plan)?;
        let crash = self.rng.random_range(0..10);
        if self.bug == Bug::ManifestBeforeSegment {
            self.write_manifest(&plan.manifest, false);
            if crash == 0 {
                return self.crash();
            }
        }
        if crash == 0 {
            // Before the segment is durable.
            return self.crash();
        }
        if !plan.items.is_empty() {
            self.disk
                .insert(segment_name(plan.segment_id), file.clone());
        }
        if self.bug == Bug::DeleteBeforeManifest {
            for id in &plan.retired {
                self.disk.remove(&segment_name(*id));
            }
        }
        if crash == 1 {
            // Segment durable, manifest not written.
            return self.crash();
        }
        if crash == 2 {
            self.write_manifest(&plan.manifest, true);
            return self.crash();
        }
        self.write_manifest(&plan.manifest, false);
        let seg = (!plan.items.is_empty()).then(|| Segment::new(plan.segment_id, Arc::new(file)));
        self.mvcc.checkpoint_install(seg, &placed);
        self.checkpoints += 1;
        self.reclaimed_segments += plan.retired.len();
        if crash == 3 {
            // Manifest durable, retired segments not yet deleted.
            return self.crash();
        }
        for id in &plan.retired {
            self.disk.remove(&segment_name(*id));
        }
        // No file leaks: the disk holds exactly the manifest's segments,
        // and the engine lists the same ones.
        let on_disk: Vec<u64> = self
            .disk
            .keys()
            .filter_map(|n| parse_segment_name(n))
            .collect();
        let mut listed = plan.manifest.segments.clone();
        listed.sort_unstable();
        if on_disk != listed {
            return Err(format!(
                "segment files {on_disk:?} but the manifest lists {listed:?}"
            ));
        }
        Ok(())
    }

    fn crash(&mut self) -> Result<(), String> {
        self.crashes += 1;
        self.reopen()
    }

    /// Rebuilds from the disk: the newest intact manifest, its segments,
    /// then the log after its applied index.
    fn reopen(&mut self) -> Result<(), String> {
        self.reopens += 1;
        self.carried_events.extend(self.mvcc.take_events());
        let manifest = crate::segment::MANIFEST_SLOTS
            .iter()
            .filter_map(|s| Manifest::decode(self.disk.get(*s)?))
            .max_by_key(|m| m.seq);
        let (mut m, from) = match manifest {
            None => (Mvcc::new(), 0),
            Some(man) => {
                let mut segs = Vec::new();
                for id in &man.segments {
                    let bytes = self.disk.get(&segment_name(*id)).ok_or_else(|| {
                        format!("manifest {} names missing segment {id}", man.seq)
                    })?;
                    segs.push(Segment::new(*id, Arc::new(bytes.clone())));
                }
                // Files the manifest does not name are leftovers of a crash.
                let names: Vec<String> = self.disk.keys().cloned().collect();
                for n in names {
                    if parse_segment_name(&n).is_some_and(|id| !man.segments.contains(&id)) {
                        self.disk.remove(&n);
                    }
                }
                let m = Mvcc::restore(&man, segs).map_err(|e| e.to_string())?;
                let from = if self.bug == Bug::ReplayCheckpointedEntry {
                    man.applied_index.saturating_sub(1)
                } else {
                    man.applied_index
                };
                (m, from as usize)
            }
        };
        for c in &self.log[from..] {
            let _ = m.apply(c);
        }
        m.skip_events();
        m.check_invariants().map_err(|e| format!("restored: {e}"))?;
        let key = |m: &Mvcc| {
            (
                m.current_revision(),
                m.compact_revision(),
                m.hash(),
                m.hash_kv(0),
                m.leases(),
                m.key_count(),
                m.alarms().to_vec(),
            )
        };
        if key(&m) != key(&self.twin) {
            let recs = |m: &Mvcc| -> Vec<(Vec<u8>, i64, i64, bool)> {
                m.store
                    .records_by_revision()
                    .map(|(k, r)| (k.to_vec(), r.rev.main, r.rev.sub, r.is_tombstone()))
                    .collect()
            };
            let (got, want) = (recs(&m), recs(&self.twin));
            let extra: Vec<_> = got.iter().filter(|r| !want.contains(r)).collect();
            let missing: Vec<_> = want.iter().filter(|r| !got.contains(r)).collect();
            return Err(format!(
                "reopened state differs from the twin's:\n got  {:?}\n want {:?}\n extra records {extra:?}\n missing records {missing:?}",
                key(&m),
                key(&self.twin)
            ));
        }
        self.mvcc = m;
        Ok(())
    }
}

impl Sut for Persisted {
    fn mvcc(&self) -> &Mvcc {
        &self.mvcc
    }
    fn mvcc_mut(&mut self) -> &mut Mvcc {
        &mut self.mvcc
    }

    fn apply(&mut self, c: &Command) -> Result<Applied, Error> {
        self.log.push(c.clone());
        let _ = self.twin.apply(c);
        self.twin.skip_events();
        let out = self.mvcc.apply(c);
        let roll = self.rng.random_range(0..100);
        let step = if roll < 12 {
            self.checkpoint()
        } else if roll < 15 {
            self.reopen()
        } else {
            Ok(())
        };
        if let Err(e) = step {
            // The model compares answers only: make the failure visible.
            panic!("persistence failed after {} commands: {e}", self.log.len());
        }
        out
    }

    fn take_events(&mut self) -> Vec<Event> {
        let mut out = std::mem::take(&mut self.carried_events);
        out.extend(self.mvcc.take_events());
        out
    }
}

fn run(seed: u64, bug: Bug) -> Result<Persisted, String> {
    let mut p = Persisted::new(seed, bug);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run_model(seed, PERSIST_STEPS_PER_SEED, &mut p).map(|_| ())
    }));
    match outcome {
        Ok(Ok(())) => Ok(p),
        Ok(Err(e)) => Err(e),
        Err(panic) => Err(panic
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_else(|| "panic".to_string())),
    }
}

fn seeds() -> Vec<u64> {
    if let Ok(s) = std::env::var("ENGINE_PERSIST_SEED") {
        return vec![s.parse().expect("ENGINE_PERSIST_SEED is a number")];
    }
    let n = std::env::var("ENGINE_PERSIST_SEEDS")
        .map(|s| s.parse().expect("ENGINE_PERSIST_SEEDS is a number"))
        .unwrap_or(PERSIST_SEEDS_COUNT);
    (0..n).collect()
}

#[test]
fn checkpoints_crashes_and_reopens_match_the_model() {
    let (mut checkpoints, mut crashes, mut reopens, mut reclaimed) = (0, 0, 0, 0);
    for seed in seeds() {
        let p = run(seed, Bug::None).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        checkpoints += p.checkpoints;
        crashes += p.crashes;
        reopens += p.reopens;
        reclaimed += p.reclaimed_segments;
    }
    // The run must reach every path it claims to test.
    if seeds().len() > 1 {
        assert!(checkpoints > 100, "only {checkpoints} checkpoints");
        assert!(crashes > 50, "only {crashes} crashes");
        assert!(reopens > 100, "only {reopens} reopens");
        assert!(reclaimed > 20, "only {reclaimed} segments reclaimed");
    }
}

#[test]
fn planted_persistence_bugs_are_caught() {
    for bug in [
        Bug::ReplayCheckpointedEntry,
        Bug::ManifestBeforeSegment,
        Bug::DeleteBeforeManifest,
    ] {
        let caught = (0..PERSIST_SEEDS_COUNT).any(|seed| run(seed, bug).is_err());
        assert!(caught, "{bug:?} went unnoticed");
    }
}

/// The segment file a plan describes, written in chunks as the server
/// does, with each item's place in it.
fn encode_plan(plan: &CheckpointPlan) -> Result<(Vec<u8>, Vec<Placed>), String> {
    let mut enc = SegmentEncoder::new(plan.segment_id);
    let mut file = Vec::new();
    let mut placed = Vec::new();
    for item in &plan.items {
        let (off, len) = item.encode(&mut enc).map_err(|e| e.to_string())?;
        placed.push((item.clone(), off, len));
        if enc.buffered() > 4096 {
            file.extend(enc.take());
        }
    }
    let (tail, _) = enc.finish();
    file.extend(tail);
    Ok((file, placed))
}

/// Plans, writes (in memory) and installs one checkpoint.
fn checkpoint_now(m: &mut Mvcc, index: u64) -> CheckpointPlan {
    let plan = m.checkpoint_plan(index, 1, false).unwrap();
    let (file, placed) = encode_plan(&plan).unwrap();
    let seg = (!plan.items.is_empty()).then(|| Segment::new(plan.segment_id, Arc::new(file)));
    m.checkpoint_install(seg, &placed);
    plan
}

/// A full segment of tiny records is not sparse: its index and trailer
/// do not count as dead bytes, so an idle store is not rewritten forever.
#[test]
fn full_segments_of_tiny_records_are_left_alone() {
    let mut m = Mvcc::new();
    for i in 0..200 {
        m.apply(&put(&format!("lock/{i}"), "")).unwrap();
    }
    for round in 0..3 {
        let plan = checkpoint_now(&mut m, 200 + round);
        assert_eq!(
            plan.items.len(),
            if round == 0 { 200 } else { 0 },
            "round {round}: only the first checkpoint has records to write"
        );
        assert!(
            !m.reclaim_due(),
            "round {round}: a full segment counts as sparse"
        );
    }
}

/// Tombstones that compaction removed are carried into the next segment
/// (they shadow older versions elsewhere), count as used space there, and
/// so a segment of them is not rewritten again and again.
#[test]
fn carried_tombstones_settle() {
    let mut m = Mvcc::new();
    for i in 0..50 {
        m.apply(&put(&format!("k{i}"), "some value bytes")).unwrap();
    }
    checkpoint_now(&mut m, 50);
    m.apply(&del("k", "l")).unwrap();
    checkpoint_now(&mut m, 51);
    // Compacting above the delete makes its tombstones dead.
    m.apply(&put("other", "v")).unwrap();
    let rev = m.current_revision();
    m.apply(&Command::Compact(CompactionRequest {
        revision: rev,
        physical: false,
    }))
    .unwrap();
    let mut carried = 0;
    let mut rounds = 0;
    while m.reclaim_due() {
        rounds += 1;
        assert!(rounds < 5, "reclamation does not settle");
        let plan = checkpoint_now(&mut m, 53 + rounds);
        carried += plan.items.iter().filter(|i| i.meta.put.is_none()).count();
    }
    assert_eq!(carried, 50, "every dead tombstone is carried once");
    assert_eq!(m.key_count(), 1);
}
