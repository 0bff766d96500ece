//! Power loss through the storage trait: the shard (engine + WAL) runs over
//! the simulated disk while concurrent clients write; at a random point the
//! power is cut (losing or tearing everything after the last completed
//! fsync), and recovery must keep every acknowledged write.
//!
//! Checkpoints run often (a tiny policy) and one client compacts as it
//! goes, so power is also cut while segments, manifests and space
//! reclamation are being written; the WAL and the revision store share
//! the disk, so one cut hits both.
//!
//! Seeded: a failure prints its seed; rerun one with `KVIK_SEED=<n>`.

use std::cell::RefCell;
use std::rc::Rc;

use engine::{Applied, Command, CompactionRequest, Limits, PutRequest, RangeRequest};
use futures_util::stream::{FuturesUnordered, StreamExt};
use net::shard::{self, Shard};
use raftlog::sim::{block_on, SimDisk};
use rand::{Rng, SeedableRng};

/// An acknowledged put: what must survive.
#[derive(Debug, Clone)]
struct Acked {
    key: Vec<u8>,
    value: Vec<u8>,
    mod_revision: i64,
}

/// Runs one seeded scenario; returns the number of acknowledged writes
/// checked and of recoveries that started from a checkpoint, or a
/// description of the first lost write.
fn scenario(seed: u64, disk: &SimDisk, check: bool) -> Result<(usize, usize), String> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let limits = Limits { txn_ops_max: 128 };
    let mut acked_all: Vec<Acked> = Vec::new();
    let mut max_rev_seen = 0;
    let mut from_checkpoint = 0;
    // Several crash/recover cycles on one disk.
    for cycle in 0..4 {
        let mut shard = block_on(Shard::open(disk.clone(), disk.clone(), limits))
            .map_err(|e| format!("cycle {cycle}: recovery failed: {e}"))?;
        let names = block_on(raftlog::Storage::list(disk)).map_err(|e| e.to_string())?;
        if names.iter().any(|n| n.starts_with("manifest-")) {
            from_checkpoint += 1;
        }
        shard.set_checkpoint_policy(shard::CheckpointPolicy {
            bytes: rng.random_range(100..4000),
            entries: rng.random_range(1..40),
        });
        let rev = shard.mvcc().current_revision();
        if rev < max_rev_seen {
            return Err(format!(
                "cycle {cycle}: revision went backwards: {rev} < {max_rev_seen}"
            ));
        }
        if check {
            let compacted = shard.mvcc().compact_revision();
            let mut newest: std::collections::HashMap<&[u8], &Acked> = Default::default();
            for a in &acked_all {
                let n = newest.entry(&a.key).or_insert(a);
                if a.mod_revision > n.mod_revision {
                    *n = a;
                }
            }
            for a in newest.values() {
                // Compaction may have removed older versions; the newest
                // acknowledged one, or something newer, must be there.
                let r = shard
                    .mvcc()
                    .range(&RangeRequest {
                        key: a.key.clone(),
                        ..Default::default()
                    })
                    .map_err(|e| format!("cycle {cycle}: range of acked {a:?}: {e}"))?;
                match r.kvs.first() {
                    Some(kv) if kv.mod_revision > a.mod_revision => {}
                    Some(kv) if kv.mod_revision == a.mod_revision && kv.value == a.value => {}
                    other => {
                        return Err(format!(
                            "cycle {cycle}: lost acknowledged write {a:?}, found {other:?}"
                        ))
                    }
                }
            }
            for a in acked_all.iter().filter(|a| a.mod_revision >= compacted) {
                let r = shard
                    .mvcc()
                    .range(&RangeRequest {
                        key: a.key.clone(),
                        revision: a.mod_revision,
                        ..Default::default()
                    })
                    .map_err(|e| format!("cycle {cycle}: range of acked {a:?}: {e}"))?;
                match r.kvs.first() {
                    Some(kv) if kv.value == a.value && kv.mod_revision == a.mod_revision => {}
                    other => {
                        return Err(format!(
                            "cycle {cycle}: lost acknowledged write {a:?}, found {other:?}"
                        ))
                    }
                }
            }
        }
        max_rev_seen = max_rev_seen.max(rev);
        disk.cut_power_after(rng.random_range(1..60));
        let (handle, inbox) = shard::channel();
        let acked: Rc<RefCell<Vec<Acked>>> = Rc::default();
        let clients = rng.random_range(1..40);
        let writes_per_client = rng.random_range(1..20);
        let mut work = FuturesUnordered::new();
        for c in 0..clients {
            let handle = handle.clone();
            let acked = acked.clone();
            let keyspace = rng.random_range(1..30);
            let mut keys: Vec<u32> = (0..writes_per_client)
                .map(|_| rng.random_range(0..keyspace))
                .collect();
            keys.dedup();
            work.push(async move {
                for (i, k) in keys.into_iter().enumerate() {
                    let key = format!("k{k}").into_bytes();
                    let value = format!("c{cycle}-{c}-{i}").into_bytes();
                    let put = PutRequest {
                        key: key.clone(),
                        value: value.clone(),
                        ..Default::default()
                    };
                    match handle.write(Command::Put(put)).await {
                        Ok(r) => {
                            assert!(matches!(r.value, Applied::Put(_)));
                            if c == 0 && i % 3 == 2 {
                                // Compaction makes dead bytes for the
                                // checkpoints to reclaim.
                                let _ = handle
                                    .write(Command::Compact(CompactionRequest {
                                        revision: r.revision - 2,
                                        physical: false,
                                    }))
                                    .await;
                                if i % 2 == 0 {
                                    let _ = handle.defragment().await;
                                }
                            }
                            acked.borrow_mut().push(Acked {
                                key,
                                value,
                                mod_revision: r.revision,
                            });
                        }
                        Err(_) => return,
                    }
                }
            });
        }
        drop(handle);
        let run = shard.run(inbox);
        let clients_done = async { while work.next().await.is_some() {} };
        let (result, ()) = block_on(futures_util::future::join(run, clients_done));
        if result.is_ok() && disk.is_powered_off() {
            return Err("the shard finished cleanly on a dead disk".into());
        }
        acked_all.extend(acked.borrow().iter().cloned());
        disk.crash(rng.random());
    }
    Ok((acked_all.len(), from_checkpoint))
}

fn seeds() -> Vec<u64> {
    match std::env::var("KVIK_SEED") {
        Ok(s) => vec![s.parse().expect("KVIK_SEED is a number")],
        Err(_) => (0..200).collect(),
    }
}

#[test]
fn acknowledged_writes_survive_power_loss() {
    let mut checked = 0;
    let mut from_checkpoint = 0;
    for seed in seeds() {
        let disk = SimDisk::new();
        match scenario(seed, &disk, true) {
            Ok((n, c)) => {
                checked += n;
                from_checkpoint += c;
            }
            Err(e) => panic!("seed {seed}: {e}"),
        }
    }
    // The checker must have had something to check.
    assert!(
        checked > 1000,
        "only {checked} acknowledged writes were checked"
    );
    // Recoveries must have started from checkpoints, not only the WAL.
    assert!(
        from_checkpoint > 300,
        "only {from_checkpoint} recoveries started from a checkpoint"
    );
}

/// The checker catches a disk that acknowledges fsyncs it did not do.
#[test]
fn checker_catches_a_lying_fsync() {
    let mut caught = 0;
    for seed in 0..50 {
        let disk = SimDisk::new();
        disk.set_lying_sync(true);
        if scenario(seed, &disk, true).is_err() {
            caught += 1;
        }
    }
    assert!(
        caught >= 40,
        "a lying fsync was caught in only {caught} of 50 seeds"
    );
}
